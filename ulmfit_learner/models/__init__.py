"""The networks: the AWD-LSTM language model with its regularisers, and the ULMFiT classifier."""
