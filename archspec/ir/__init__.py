"""The IR (torch-free): the analysed tree of resolved operations (`node`), the activation ops (`activations`),
the Python-source expressions every op writes itself as (`expr`), and the memory model ops replay into
(`memory`). It imports nothing from the language or the consumers."""
