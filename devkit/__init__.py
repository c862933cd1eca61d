"""Development kit shared by the tests, the bench and the demo: the embedded stack (Apache Kafka
or Tansu, noida-db, a mail sink or MailDev), the services as child processes, readers of what
landed in the inbox, Kafka and Elasticsearch, valid orders, and waiting with a deadline. Nothing in
the pipeline itself imports it."""
