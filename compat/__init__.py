"""The compatibility matrix: real Kafka clients driven against a fresh pybroker.

``python -m compat`` runs every client folder's scenario program for every
scenario and writes ``MATRIX.md`` and ``matrix.json`` beside this file. See
``README.md`` in this folder for the contract between the runner and the
scenario programs.
"""
