module splitbrain.test/nodes

go 1.19
