FROM base-image

COPY dependency/hadoop-ai/generated/ /usr/local/
