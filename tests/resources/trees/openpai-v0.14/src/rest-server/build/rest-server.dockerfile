FROM node:carbon

COPY . /rest-server
