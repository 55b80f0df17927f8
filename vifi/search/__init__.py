"""Text-to-video search: `vifi index` embeds videos into an index folder, `vifi search` ranks them by a text.

index_folder.py owns the folder (layout, commits, reading); build.py decides what to embed and embeds it;
query.py ranks. docs/search.md says what is promised and why.
"""
