"""Error messages for people: TensorFlow's op errors without their graph-node decoration."""
import re

_DECORATION = re.compile(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:[^\]]*\]( name: \S*)?")


def short_message(error, limit=300):
    """The first line of an exception's message, TF's `{{function_node ...}}` and
    `[Op:...]` left out, at most `limit` characters."""
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    lines = _DECORATION.sub("", text).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:limit]
