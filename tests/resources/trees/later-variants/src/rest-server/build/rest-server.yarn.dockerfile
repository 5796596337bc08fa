FROM node:carbon
