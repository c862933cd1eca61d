"""Admin: topics, index templates, Kibana saved objects, and the embedded development stack."""
