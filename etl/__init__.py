"""countylake: the data core of a county big-data center (县大数据中心)."""

__version__ = "0.1.0"
