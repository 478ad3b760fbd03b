// Unit tests for io/safetensors: files are written byte by byte here (8-byte little-endian header length,
// JSON header, data section), so the expected values never come from the code under test. Covers exact
// reads per dtype and the rejection of hostile or truncated headers with messages naming file and tensor.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/safetensors.h"
#include "mlx/mlx.h"

namespace {
namespace fs = std::filesystem;
namespace mx = mlx::core;
using nlohmann::json;
using Bytes = std::vector<uint8_t>;

void append_u16_le(Bytes& b, uint16_t v) {
  for (int i = 0; i < 2; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void append_u32_le(Bytes& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// A fresh folder under the system temp dir per test, removed afterwards.
class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::random_device rd;
    dir_ = fs::temp_directory_path() / fmt::format("k2_unit_st_{}_{:08x}{:08x}", info->name(), rd(), rd());
    ASSERT_TRUE(fs::create_directories(dir_));
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Writes raw bytes to <dir>/<name> and returns the path.
  std::string write_raw(const std::string& name, const Bytes& bytes) {
    const fs::path p = dir_ / name;
    std::ofstream out(p, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    EXPECT_TRUE(out.good());
    return p.string();
  }

  // 8-byte LE header length (`declared_len`, default: the real one) + header text + data.
  std::string write_st(const std::string& name, const std::string& header, const Bytes& data,
                       std::optional<uint64_t> declared_len = std::nullopt) {
    Bytes b;
    const uint64_t len = declared_len.value_or(header.size());
    for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(len >> (8 * i)));
    b.insert(b.end(), header.begin(), header.end());
    b.insert(b.end(), data.begin(), data.end());
    return write_raw(name, b);
  }

  // Expects the file to be rejected with a CheckpointError whose message contains all `parts`.
  void expect_rejected(const std::string& path, const std::vector<std::string>& parts) {
    try {
      k2::SafetensorsFile f(path);
      ADD_FAILURE() << "expected CheckpointError for " << path;
    } catch (const k2::CheckpointError& e) {
      const std::string msg = e.what();
      for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
    }
  }

  fs::path dir_;
};

// One tensor header entry.
json entry(const std::string& dtype, const std::vector<int64_t>& shape, uint64_t begin, uint64_t end) {
  return json{{"dtype", dtype}, {"shape", shape}, {"data_offsets", {begin, end}}};
}

TEST_F(SafetensorsTest, ReadsExactValuesForEachDtype) {
  Bytes data;
  // F32 [2, 2] at [0, 16): 1.5, -2.25, 3.0, 0.5 (IEEE-754 bit patterns).
  for (uint32_t bits : {0x3FC00000u, 0xC0100000u, 0x40400000u, 0x3F000000u}) append_u32_le(data, bits);
  // BF16 [3] at [16, 22): 1.0, -2.0, 0.5.
  for (uint16_t bits : {0x3F80, 0xC000, 0x3F00}) append_u16_le(data, bits);
  // U32 [2] at [22, 30): 0xDEADBEEF, 7.
  append_u32_le(data, 0xDEADBEEFu);
  append_u32_le(data, 7u);
  // F8_E4M3 [2, 2] at [30, 34): raw bytes.
  for (uint8_t v : {0x00, 0x38, 0xB8, 0x7E}) data.push_back(v);

  json h;
  h["w.f32"] = entry("F32", {2, 2}, 0, 16);
  h["w.bf16"] = entry("BF16", {3}, 16, 22);
  h["w.u32"] = entry("U32", {2}, 22, 30);
  h["w.f8"] = entry("F8_E4M3", {2, 2}, 30, 34);
  h["w.empty"] = entry("F32", {0, 4}, 34, 34);
  h["__metadata__"] = {{"format", "pt"}, {"producer", "k2 test"}};
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');  // the reference writer pads with spaces to 8 bytes
  const std::string path = write_st("ok.safetensors", header, data);
  const uint64_t data_start = 8 + header.size();

  k2::SafetensorsFile f(path);
  EXPECT_EQ(f.path(), path);
  ASSERT_EQ(f.tensors().size(), 5u);  // __metadata__ is not a tensor
  EXPECT_FALSE(f.contains("__metadata__"));
  ASSERT_EQ(f.metadata().size(), 2u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("producer"), "k2 test");

  const auto& i32 = f.info("w.f32");
  EXPECT_EQ(i32.name, "w.f32");
  EXPECT_EQ(i32.dtype, k2::StDtype::F32);
  EXPECT_EQ(i32.shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(i32.offset, data_start);
  EXPECT_EQ(i32.nbytes, 16u);
  EXPECT_EQ(i32.numel(), 4);
  EXPECT_EQ(i32.shape_string(), "[2, 2]");
  EXPECT_EQ(f.info("w.u32").offset, data_start + 22);
  EXPECT_EQ(f.info("w.f8").dtype, k2::StDtype::F8_E4M3);

  auto a = f.read("w.f32");
  EXPECT_EQ(a.dtype(), mx::float32);
  EXPECT_EQ(a.shape(), (mx::Shape{2, 2}));
  a.eval();
  const float* pa = a.data<float>();
  EXPECT_EQ(pa[0], 1.5f);
  EXPECT_EQ(pa[1], -2.25f);
  EXPECT_EQ(pa[2], 3.0f);
  EXPECT_EQ(pa[3], 0.5f);

  auto b = f.read("w.bf16");
  EXPECT_EQ(b.dtype(), mx::bfloat16);
  EXPECT_EQ(b.shape(), (mx::Shape{3}));
  auto bf = mx::astype(b, mx::float32);
  bf.eval();
  EXPECT_EQ(bf.data<float>()[0], 1.0f);
  EXPECT_EQ(bf.data<float>()[1], -2.0f);
  EXPECT_EQ(bf.data<float>()[2], 0.5f);

  auto u = f.read("w.u32");
  EXPECT_EQ(u.dtype(), mx::uint32);
  u.eval();
  EXPECT_EQ(u.data<uint32_t>()[0], 0xDEADBEEFu);
  EXPECT_EQ(u.data<uint32_t>()[1], 7u);

  auto q = f.read("w.f8");
  EXPECT_EQ(q.dtype(), mx::uint8);  // F8 loads as raw bytes
  EXPECT_EQ(q.shape(), (mx::Shape{2, 2}));
  q.eval();
  EXPECT_EQ(q.data<uint8_t>()[0], 0x00);
  EXPECT_EQ(q.data<uint8_t>()[1], 0x38);
  EXPECT_EQ(q.data<uint8_t>()[2], 0xB8);
  EXPECT_EQ(q.data<uint8_t>()[3], 0x7E);

  auto e = f.read("w.empty");
  EXPECT_EQ(e.shape(), (mx::Shape{0, 4}));
  EXPECT_EQ(e.size(), 0u);

  // Reading again (after other reads moved the stream) gives the same bytes.
  auto a2 = f.read("w.f32");
  a2.eval();
  EXPECT_EQ(a2.data<float>()[3], 0.5f);
}

TEST_F(SafetensorsTest, ConcurrentReadsAreConsistent) {
  // Eight U32 tensors of 1024 elements, tensor t holds t*10000 + i.
  constexpr int kTensors = 8, kN = 1024;
  Bytes data;
  json h;
  for (int t = 0; t < kTensors; ++t) {
    h[fmt::format("t{}", t)] = entry("U32", {kN}, uint64_t(t) * kN * 4, uint64_t(t + 1) * kN * 4);
    for (int i = 0; i < kN; ++i) append_u32_le(data, uint32_t(t * 10000 + i));
  }
  k2::SafetensorsFile f(write_st("many.safetensors", h.dump(), data));
  std::vector<int> bad(4, 0);
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w)
    threads.emplace_back([&, w] {
      for (int rep = 0; rep < 20; ++rep)
        for (int t = 0; t < kTensors; ++t) {
          auto a = f.read(fmt::format("t{}", (t + w) % kTensors));
          const int tt = (t + w) % kTensors;
          // Check the raw buffer directly (no graph evaluation from several threads).
          const uint32_t* p = a.data<uint32_t>();
          for (int i = 0; i < kN; ++i)
            if (p[i] != uint32_t(tt * 10000 + i)) ++bad[w];
        }
    });
  for (auto& t : threads) t.join();
  for (int w = 0; w < 4; ++w) EXPECT_EQ(bad[w], 0) << "worker " << w;
}

TEST_F(SafetensorsTest, EmptyHeaderObjectHasNoTensors) {
  k2::SafetensorsFile f(write_st("empty.safetensors", "{}", {}));
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_TRUE(f.metadata().empty());
}

TEST_F(SafetensorsTest, UnknownTensorNameIsAnError) {
  json h;
  h["x"] = entry("U8", {1}, 0, 1);
  const std::string path = write_st("one.safetensors", h.dump(), {42});
  k2::SafetensorsFile f(path);
  EXPECT_THROW(f.info("nope"), k2::CheckpointError);
  try {
    f.read("nope");
    ADD_FAILURE() << "read of a missing tensor succeeded";
  } catch (const k2::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
  }
}

TEST_F(SafetensorsTest, FileTruncatedAfterOpeningGivesShortReadError) {
  json h;
  h["late"] = entry("U8", {16}, 0, 16);
  const std::string path = write_st("later.safetensors", h.dump(), Bytes(16, 7));
  k2::SafetensorsFile f(path);
  fs::resize_file(path, fs::file_size(path) - 10);
  try {
    f.read("late");
    ADD_FAILURE() << "read of a truncated tensor succeeded";
  } catch (const k2::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("later.safetensors"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("late"), std::string::npos) << e.what();
  }
}

TEST_F(SafetensorsTest, FileShorterThanEightBytes) {
  expect_rejected(write_raw("short.safetensors", {1, 0, 0, 0, 0}), {"short.safetensors"});
  expect_rejected(write_raw("zero.safetensors", {}), {"zero.safetensors"});
}

TEST_F(SafetensorsTest, MissingFile) {
  expect_rejected((dir_ / "absent.safetensors").string(), {"absent.safetensors"});
}

TEST_F(SafetensorsTest, HeaderLengthLargerThanFile) {
  // Declares a 1000-byte header but the file holds 30 bytes after the length.
  const std::string path = write_st("trunc_header.safetensors", std::string(30, ' '), {}, 1000);
  expect_rejected(path, {"trunc_header.safetensors", "1000"});
}

TEST_F(SafetensorsTest, HeaderLengthOverHundredMegabytes) {
  // A file that would be valid ("{}" padded with spaces) except that its header is 100 MiB + 1 bytes.
  const uint64_t len = 100ull * 1024 * 1024 + 1;
  std::string header = "{}";
  header.resize(len, ' ');
  const std::string path = write_st("huge_header.safetensors", header, {});
  header.clear();
  header.shrink_to_fit();
  expect_rejected(path, {"huge_header.safetensors", std::to_string(len)});
  fs::remove(path);
  // Exactly at the limit is still accepted.
  std::string at_limit = "{}";
  at_limit.resize(100ull * 1024 * 1024, ' ');
  const std::string ok = write_st("limit_header.safetensors", at_limit, {});
  at_limit.clear();
  at_limit.shrink_to_fit();
  EXPECT_NO_THROW(k2::SafetensorsFile f(ok));
  fs::remove(ok);
  // The largest possible length must not wrap around anywhere.
  expect_rejected(write_st("max_header.safetensors", "{}", {}, UINT64_MAX), {"max_header.safetensors"});
}

TEST_F(SafetensorsTest, BadJson) {
  expect_rejected(write_st("badjson.safetensors", R"({"w": {"dtype": "F32", )", {}), {"badjson.safetensors"});
}

TEST_F(SafetensorsTest, DeepNestingAndNumberOverflowAreCheckpointErrors) {
  // Metadata values are printed with dump(), which recurses once per level: 200,000 levels would overflow the stack.
  const std::string deep = R"({"__metadata__": {"x": )" + std::string(200000, '[') + std::string(200000, ']') + "}}";
  expect_rejected(write_st("deep.safetensors", deep, {}), {"deep.safetensors", "nested more than"});
  expect_rejected(write_st("overflow.safetensors", R"({"w": {"dtype": "F32", "shape": [1e400], "data_offsets": [0, 4]}})",
                           Bytes(4)),
                  {"overflow.safetensors", "not valid JSON"});
}

TEST_F(SafetensorsTest, NonObjectJson) {
  expect_rejected(write_st("array.safetensors", "[1, 2, 3]", {}), {"array.safetensors"});
  expect_rejected(write_st("string.safetensors", R"("hello")", {}), {"string.safetensors"});
}

TEST_F(SafetensorsTest, EntryNotAnObjectOrMissingFields) {
  expect_rejected(write_st("e1.safetensors", R"({"w": 5})", {}), {"e1.safetensors", "'w'"});
  expect_rejected(write_st("e2.safetensors", R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", Bytes(4)),
                  {"e2.safetensors", "'w'", "dtype"});
  expect_rejected(write_st("e3.safetensors", R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", Bytes(4)),
                  {"e3.safetensors", "'w'", "shape"});
  expect_rejected(write_st("e4.safetensors", R"({"w": {"dtype": "F32", "shape": [1]}})", Bytes(4)),
                  {"e4.safetensors", "'w'", "data_offsets"});
  expect_rejected(
      write_st("e5.safetensors", R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", Bytes(4)),
      {"e5.safetensors", "'w'", "data_offsets"});
}

TEST_F(SafetensorsTest, UnknownDtype) {
  json h;
  h["model.w"] = entry("F4", {2}, 0, 1);
  expect_rejected(write_st("dtype.safetensors", h.dump(), Bytes(1)), {"dtype.safetensors", "model.w", "F4"});
}

TEST_F(SafetensorsTest, NegativeDimension) {
  json h;
  h["neg"] = entry("F32", {-1, 2}, 0, 8);
  expect_rejected(write_st("neg.safetensors", h.dump(), Bytes(8)), {"neg.safetensors", "neg"});
}

TEST_F(SafetensorsTest, NonIntegerDimensionOrOffset) {
  expect_rejected(
      write_st("fdim.safetensors", R"({"w": {"dtype": "U8", "shape": [2.5], "data_offsets": [0, 2]}})", Bytes(2)),
      {"fdim.safetensors", "'w'"});
  expect_rejected(
      write_st("fofs.safetensors", R"({"w": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2.0]}})", Bytes(2)),
      {"fofs.safetensors", "'w'"});
  expect_rejected(
      write_st("nofs.safetensors", R"({"w": {"dtype": "U8", "shape": [2], "data_offsets": [-2, 0]}})", Bytes(2)),
      {"nofs.safetensors", "'w'"});
}

TEST_F(SafetensorsTest, OffsetsPastEndOfTruncatedFile) {
  json h;
  h["big"] = entry("F32", {4}, 0, 16);
  // Only 8 of the 16 data bytes made it to disk.
  expect_rejected(write_st("truncated.safetensors", h.dump(), Bytes(8)), {"truncated.safetensors", "big"});
}

TEST_F(SafetensorsTest, ReversedOffsets) {
  json h;
  h["rev"] = entry("U8", {0}, 8, 0);
  expect_rejected(write_st("rev.safetensors", h.dump(), Bytes(8)), {"rev.safetensors", "rev"});
  // Reversed by 2^32: end - begin wraps to 2^64 - 2^32 = 65536 * 65536 * 65535 * 65537 bytes, which the
  // shape matches exactly, so only the order check can catch it.
  json h2;
  h2["wraps"] = entry("U8", {65536, 65536, 65535, 65537}, uint64_t(1) << 32, 0);
  expect_rejected(write_st("rev2.safetensors", h2.dump(), Bytes(8)), {"rev2.safetensors", "wraps"});
}

TEST_F(SafetensorsTest, SizeMismatchBetweenDtypeShapeAndOffsets) {
  json h;
  h["mis"] = entry("F32", {3}, 0, 8);  // needs 12 bytes
  expect_rejected(write_st("mis.safetensors", h.dump(), Bytes(16)), {"mis.safetensors", "mis"});
  json h2;
  h2["bf"] = entry("BF16", {4}, 0, 4);  // needs 8 bytes
  expect_rejected(write_st("mis2.safetensors", h2.dump(), Bytes(8)), {"mis2.safetensors", "bf"});
}

TEST_F(SafetensorsTest, OverlappingTensors) {
  json h;
  h["first"] = entry("F32", {2}, 0, 8);
  h["second"] = entry("F32", {2}, 4, 12);
  expect_rejected(write_st("overlap.safetensors", h.dump(), Bytes(12)), {"overlap.safetensors", "first", "second"});
  // One tensor inside another, with a third after both.
  json h2;
  h2["outer"] = entry("U8", {16}, 0, 16);
  h2["inner"] = entry("U8", {4}, 4, 8);
  h2["later"] = entry("U8", {4}, 16, 20);
  expect_rejected(write_st("nested.safetensors", h2.dump(), Bytes(20)), {"nested.safetensors", "outer", "inner"});
  // Identical ranges.
  json h3;
  h3["a"] = entry("U8", {4}, 0, 4);
  h3["b"] = entry("U8", {4}, 0, 4);
  expect_rejected(write_st("same.safetensors", h3.dump(), Bytes(4)), {"same.safetensors"});
}

TEST_F(SafetensorsTest, HugeDimensionsThatOverflow) {
  // 65536^4 = 2^64 elements: a wrapping product would be 0 and match data_offsets [0, 0].
  json h;
  h["wrap"] = entry("U8", {65536, 65536, 65536, 65536}, 0, 0);
  expect_rejected(write_st("wrap.safetensors", h.dump(), {}), {"wrap.safetensors", "wrap"});
  // 2^62 elements x 4 bytes = 2^64 bytes: the byte count would wrap to 0.
  json h2;
  h2["bytes"] = entry("F32", {65536, 65536, 65536, 16384}, 0, 0);
  expect_rejected(write_st("bytes.safetensors", h2.dump(), {}), {"bytes.safetensors", "bytes"});
  // One dimension beyond what an MLX shape (int32) can hold.
  json h3;
  h3["wide"] = entry("U8", {int64_t(1) << 32}, 0, 0);
  expect_rejected(write_st("wide.safetensors", h3.dump(), {}), {"wide.safetensors", "wide"});
  // A dimension beyond int64.
  expect_rejected(write_st("u64.safetensors",
                           R"({"u": {"dtype": "U8", "shape": [18446744073709551615], "data_offsets": [0, 0]}})", {}),
                  {"u64.safetensors", "'u'"});
}

TEST(SafetensorsHeader, ParsesDirectlyWithAbsoluteOffsets) {
  json h;
  h["b"] = entry("I64", {2}, 8, 24);
  h["a"] = entry("F16", {4}, 0, 8);
  h["__metadata__"] = {{"format", "mlx"}};
  const auto t = k2::parse_safetensors_header(h.dump(), 24, 1000, "mem.safetensors");
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t.at("a").dtype, k2::StDtype::F16);
  EXPECT_EQ(t.at("a").offset, 1000u);
  EXPECT_EQ(t.at("a").nbytes, 8u);
  EXPECT_EQ(t.at("b").dtype, k2::StDtype::I64);
  EXPECT_EQ(t.at("b").offset, 1008u);
  EXPECT_EQ(t.at("b").nbytes, 16u);

  // The same header against a shorter data section names the label and the tensor.
  try {
    k2::parse_safetensors_header(h.dump(), 23, 1000, "mem.safetensors");
    ADD_FAILURE() << "expected CheckpointError";
  } catch (const k2::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("mem.safetensors"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'b'"), std::string::npos) << e.what();
  }
}

TEST(SafetensorsHeader, DtypeNamesAndSizes) {
  struct Row {
    k2::StDtype d;
    const char* name;
    size_t size;
  };
  const Row rows[] = {{k2::StDtype::F64, "F64", 8},      {k2::StDtype::F32, "F32", 4},
                      {k2::StDtype::F16, "F16", 2},      {k2::StDtype::BF16, "BF16", 2},
                      {k2::StDtype::I64, "I64", 8},      {k2::StDtype::I32, "I32", 4},
                      {k2::StDtype::I16, "I16", 2},      {k2::StDtype::I8, "I8", 1},
                      {k2::StDtype::U64, "U64", 8},      {k2::StDtype::U32, "U32", 4},
                      {k2::StDtype::U16, "U16", 2},      {k2::StDtype::U8, "U8", 1},
                      {k2::StDtype::BOOL, "BOOL", 1},    {k2::StDtype::F8_E4M3, "F8_E4M3", 1},
                      {k2::StDtype::F8_E5M2, "F8_E5M2", 1}};
  for (const auto& r : rows) {
    EXPECT_STREQ(k2::to_string(r.d), r.name);
    EXPECT_EQ(k2::dtype_size(r.d), r.size) << r.name;
  }
}

}  // namespace
