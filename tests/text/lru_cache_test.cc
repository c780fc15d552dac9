// The LRU cache's bounds (entries and bytes), recency and statistics.
#include "engine/text/lru_cache.h"

#include <gtest/gtest.h>

#include <string>

namespace longsana::engine {
namespace {

TEST(LruCache, HitAndMiss) {
  LruCache<std::string, int> cache(4, 1000);
  EXPECT_FALSE(cache.Get("a").has_value());
  EXPECT_TRUE(cache.Put("a", 1, 10));
  ASSERT_TRUE(cache.Get("a").has_value());
  EXPECT_EQ(*cache.Get("a"), 1);
  EXPECT_EQ(cache.stats().hits, 2u);
  EXPECT_EQ(cache.stats().misses, 1u);
  EXPECT_EQ(cache.stats().entries, 1u);
  EXPECT_EQ(cache.stats().bytes, 10u);
}

TEST(LruCache, EvictsLeastRecentlyUsedByEntries) {
  LruCache<std::string, int> cache(3, 1000);
  cache.Put("a", 1, 1);
  cache.Put("b", 2, 1);
  cache.Put("c", 3, 1);
  EXPECT_TRUE(cache.Get("a").has_value());  // a is now the most recent
  cache.Put("d", 4, 1);                     // evicts b
  EXPECT_FALSE(cache.Contains("b"));
  EXPECT_TRUE(cache.Contains("a"));
  EXPECT_TRUE(cache.Contains("c"));
  EXPECT_TRUE(cache.Contains("d"));
  EXPECT_EQ(cache.stats().entries, 3u);
  EXPECT_EQ(cache.stats().evictions, 1u);
}

TEST(LruCache, EvictsByBytes) {
  LruCache<std::string, int> cache(100, 100);
  cache.Put("a", 1, 40);
  cache.Put("b", 2, 40);
  EXPECT_EQ(cache.stats().bytes, 80u);
  cache.Put("c", 3, 40);  // 120 > 100: a goes
  EXPECT_FALSE(cache.Contains("a"));
  EXPECT_EQ(cache.stats().bytes, 80u);
  cache.Put("d", 4, 95);  // only d fits
  EXPECT_EQ(cache.stats().entries, 1u);
  EXPECT_TRUE(cache.Contains("d"));
  EXPECT_EQ(cache.stats().bytes, 95u);
  EXPECT_EQ(cache.stats().evictions, 3u);
}

TEST(LruCache, OversizedValueIsNotStoredAndDropsAStaleOne) {
  LruCache<std::string, int> cache(10, 50);
  cache.Put("a", 1, 10);
  EXPECT_FALSE(cache.Put("a", 2, 51));
  EXPECT_FALSE(cache.Contains("a"));
  EXPECT_EQ(cache.stats().rejected, 1u);
  EXPECT_EQ(cache.stats().bytes, 0u);
}

TEST(LruCache, ReplaceUpdatesBytes) {
  LruCache<std::string, int> cache(10, 100);
  cache.Put("a", 1, 10);
  cache.Put("a", 2, 30);
  EXPECT_EQ(*cache.Get("a"), 2);
  EXPECT_EQ(cache.stats().bytes, 30u);
  EXPECT_EQ(cache.stats().entries, 1u);
  EXPECT_EQ(cache.stats().evictions, 0u);
}

TEST(LruCache, DisabledCacheStoresNothing) {
  LruCache<std::string, int> none(0, 100);
  EXPECT_FALSE(none.Put("a", 1, 1));
  EXPECT_FALSE(none.Get("a").has_value());
  LruCache<std::string, int> no_bytes(10, 0);
  EXPECT_FALSE(no_bytes.Put("a", 1, 1));
  EXPECT_EQ(no_bytes.stats().entries, 0u);
}

TEST(LruCache, EraseAndClear) {
  LruCache<std::string, int> cache(10, 100);
  cache.Put("a", 1, 10);
  cache.Put("b", 2, 10);
  EXPECT_TRUE(cache.Erase("a"));
  EXPECT_FALSE(cache.Erase("a"));
  EXPECT_EQ(cache.stats().bytes, 10u);
  cache.Clear();
  EXPECT_EQ(cache.stats().entries, 0u);
  EXPECT_EQ(cache.stats().bytes, 0u);
}

}  // namespace
}  // namespace longsana::engine
