"""Reports on the IR (torch-free): the summary table (`summary`), two summaries compared (`diff`), the memory
guard (`guard`) and the Graphviz drawing (`diagram`)."""
