"""`python -m bench`: measures each stage of the pipeline beside the limit it runs against."""
