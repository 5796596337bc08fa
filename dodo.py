"""doit entry point: `doit list`, `doit build:componentB`, `doit -n 4 build` on src-fixtures."""

from paitasks.dodo import tasks_for

DOIT_CONFIG, task_paitasks = tasks_for(default_src="src-fixtures")
