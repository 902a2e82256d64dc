"""Reports on the IR (torch-free): the summary table (`summary`), two summaries compared (`diff`), the memory
guard (`guard`), the Graphviz drawing (`diagram`) and the
catalogue of a folder's specs (`catalogue`)."""
