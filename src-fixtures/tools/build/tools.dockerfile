FROM docker.io/library/tools-base:latest
RUN echo "tools" > /etc/tools \
 && cat /etc/tools-base /etc/tools > /etc/tools-all
