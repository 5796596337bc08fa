# The base image is chosen by a build argument; the default is an image of the tree.
ARG BASE_IMAGE=tools
FROM ${BASE_IMAGE}
RUN echo "argbase on $(cat /etc/tools)" > /etc/argbase
