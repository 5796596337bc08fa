FROM golang:1.13.8-alpine as builder
COPY . /src
RUN go build -o /watchdog /src

FROM python:2.7
COPY --from=builder /watchdog /usr/local/bin/watchdog
