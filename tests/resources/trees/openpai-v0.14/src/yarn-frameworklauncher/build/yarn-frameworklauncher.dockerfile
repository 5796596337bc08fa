FROM hadoop-run

COPY . /launcher
