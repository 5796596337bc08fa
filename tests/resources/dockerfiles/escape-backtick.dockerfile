# escape=`
# Windows-style escape: the backtick continues lines, backslashes are literal.
ARG BASE=mcr.microsoft.com/windows/servercore:ltsc2019
FROM $BASE `
    AS build
RUN mkdir C:\build `
    && echo done
FROM build
COPY --from=build C:\build C:\app
