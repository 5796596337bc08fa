FROM base-image

COPY dependency/componentA/ /usr/local/componentA/
COPY dependency/test-build/ /usr/local/test-build/
RUN chmod a+x /usr/local/test-build/start.sh

CMD ["/usr/local/test-build/start.sh"]
