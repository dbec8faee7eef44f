"""Counts said in words, for what people read (the commands' summaries, the leaderboard
page): '1 shard', '2 shards'."""


def counted(n: int, noun: str) -> str:
    """`n` and `noun`, the noun plural unless n is 1: '1 shard', '0 shards'."""
    return f"{n} {noun}{'s' * (n != 1)}"
