#!/bin/sh
exec python3 "$(dirname "$0")/echo.py" flaky
