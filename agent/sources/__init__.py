"""Event sources of the agent: MinIO bucket notifications and the watcher of RAGFlow's docker/ folder.

Both follow one rule: the thread that receives events only queues them; a separate thread calls the
callbacks (which enqueue Dramatiq messages and may raise while Redis is down), so a failing callback can
never kill a listener or an observer.
"""
