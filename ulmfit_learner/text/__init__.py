"""The text pipeline: tokenization, vocabulary, language-model and classifier loaders, and the data API."""
