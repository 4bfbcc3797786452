from redis.asyncio import Redis


async def test_the_test_store_is_a_real_server(redis: Redis) -> None:
    await redis.set("ankomst:probe", "1")
    assert await redis.get("ankomst:probe") == "1"
    info = await redis.info("server")
    assert "redis_version" in info or "valkey_version" in info
