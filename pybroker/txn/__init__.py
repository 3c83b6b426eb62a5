"""Transactions: the transaction coordinator's state and its records in
``__transaction_state`` (Kafka's formats)."""
