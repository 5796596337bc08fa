FROM base-image
COPY . /opt/rest-server/
CMD ["/opt/rest-server/app/server.sh"]
