FROM hadoop-run
