"""The channel layer (settings.CHANNEL_LAYERS): channels-redis, with a group send in two Redis round trips.

channels-redis 4 sends to a group in four sequential commands: drop the group's expired members, read the
members, drop each member channel's expired messages, then a Lua script that adds the message to each channel
under its capacity. Every turn's results go through it, from a worker to the conversation's sockets, so each
round trip is latency on the path from the user's Enter to their results (and a wake-up of the worker's
publishing thread on a busy machine). Here the first two commands go in one pipeline and the last two in
another: the same commands in the same order, so the same outcome.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from channels_redis.core import RedisChannelLayer

log = logging.getLogger(__name__)

# channels-redis's own script: add the message to each channel still under its capacity, count the others
GROUP_SEND_LUA = """
    local over_capacity = 0
    local current_time = ARGV[#ARGV - 1]
    local expiry = ARGV[#ARGV]
    for i=1,#KEYS do
        if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i + #KEYS]) then
            redis.call('ZADD', KEYS[i], current_time, ARGV[i])
            redis.call('EXPIRE', KEYS[i], expiry)
        else
            over_capacity = over_capacity + 1
        end
    end
    return over_capacity
"""


class PipelinedRedisChannelLayer(RedisChannelLayer):
    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert self.require_valid_group_name(group), "Group name not valid"
        key = self._group_key(group)
        async with self.connection(self.consistent_hash(group)).pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(key, min=0, max=int(time.time()) - self.group_expiry)
            pipe.zrange(key, 0, -1)
            _, members = await pipe.execute()
        channel_names = [name.decode("utf8") for name in members]
        channel_keys, messages, capacities = self._map_channel_keys_to_connection(channel_names, message)
        for index, keys in channel_keys.items():
            async with self.connection(index).pipeline(transaction=False) as pipe:
                for channel_key in keys:
                    pipe.zremrangebyscore(channel_key, min=0, max=int(time.time()) - int(self.expiry))
                args = [messages[k] for k in keys] + [capacities[k] for k in keys] + [time.time(), self.expiry]
                pipe.eval(GROUP_SEND_LUA, len(keys), *keys, *args)
                over_capacity = (await pipe.execute())[-1]
            if over_capacity > 0:
                log.info("%s of %s channels over capacity in group %s", over_capacity, len(channel_names), group)
