"""What the LangChain, LlamaIndex and Haystack adapters share (private; no framework imports).

:mod:`.calls` (one adapter call: options, instruction precedence, metadata, selection, scores),
:mod:`.holder` (a ready reranker, its ``to_config()`` dict or settings, built lazily),
:mod:`.policy` (which settings an adapter accepts and from whom; pickling),
:mod:`.pydantic_model` (what the two pydantic adapters share) and :mod:`.haystack_rules` (the
Haystack ranker's pure decisions). The public classes stay in :mod:`rerank_integrations.langchain`,
``.llama_index`` and ``.haystack``, the only modules that import their framework.
"""
