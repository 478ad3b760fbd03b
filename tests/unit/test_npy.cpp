// Unit tests for io/npy: the written file is parsed back by hand following the .npy v1.0 format
// (magic, version, little-endian header length, Python-literal header dict padded with spaces and ended by
// a newline, then little-endian float32 values in C order, or Fortran order when fortran_order is True).
// numpy's own writer pads the data to a 64-byte boundary, which its reader does not require; MLX does not.
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"
#include "io/npy.h"
#include "mlx/mlx.h"

namespace {
namespace fs = std::filesystem;
namespace mx = mlx::core;

struct ParsedNpy {
  std::string header;  // the dict text, without the trailing newline and padding
  std::string shape;   // the tuple's inside with spaces removed and no trailing comma: "2,3", "5", ""
  std::vector<float> values;  // in C order whatever the file's order
};

std::vector<size_t> dims_of(const std::string& shape) {
  std::vector<size_t> dims;
  size_t start = 0;
  while (start < shape.size()) {
    const size_t comma = shape.find(',', start);
    dims.push_back(std::stoul(shape.substr(start, comma - start)));
    start = comma == std::string::npos ? shape.size() : comma + 1;
  }
  return dims;
}

// Fortran order (first index fastest) to C order (last index fastest).
std::vector<float> fortran_to_c(const std::vector<float>& f, const std::vector<size_t>& dims) {
  std::vector<float> c(f.size());
  std::vector<size_t> idx(dims.size(), 0);
  for (size_t i = 0; i < c.size(); ++i) {  // i walks C order; idx is its multi-index
    size_t off = 0, stride = 1;
    for (size_t d = 0; d < dims.size(); ++d) off += idx[d] * stride, stride *= dims[d];
    c[i] = f[off];
    for (size_t d = dims.size(); d-- > 0;) {
      if (++idx[d] < dims[d]) break;
      idx[d] = 0;
    }
  }
  return c;
}

// Parses a .npy v1.0 float32 file, checking every structural rule on the way.
ParsedNpy parse_npy(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  const std::vector<uint8_t> b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ParsedNpy out;
  EXPECT_GE(b.size(), 10u);
  if (b.size() < 10) return out;
  const uint8_t magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(b[i], magic[i]) << "magic byte " << i;
  EXPECT_EQ(b[6], 1) << "major version";
  EXPECT_EQ(b[7], 0) << "minor version";
  const size_t hlen = b[8] | (size_t(b[9]) << 8);
  EXPECT_LE(10 + hlen, b.size());
  if (10 + hlen > b.size()) return out;
  std::string header(b.begin() + 10, b.begin() + 10 + static_cast<long>(hlen));
  EXPECT_EQ(header.back(), '\n');
  // Padding is spaces between the dict and the newline.
  const size_t close = header.rfind('}');
  EXPECT_NE(close, std::string::npos);
  for (size_t i = close + 1; i + 1 < header.size(); ++i) EXPECT_EQ(header[i], ' ') << "padding at " << i;
  out.header = header.substr(0, close + 1);
  EXPECT_EQ(out.header.front(), '{');

  EXPECT_TRUE(std::regex_search(out.header, std::regex(R"('descr'\s*:\s*'<f4')"))) << out.header;
  std::smatch m;
  bool fortran = false;
  if (std::regex_search(out.header, m, std::regex(R"('fortran_order'\s*:\s*(True|False))"))) fortran = m[1] == "True";
  else ADD_FAILURE() << "no fortran_order in " << out.header;
  if (std::regex_search(out.header, m, std::regex(R"('shape'\s*:\s*\(([^)]*)\))"))) {
    for (char c : m[1].str())
      if (c != ' ') out.shape.push_back(c);
    if (!out.shape.empty() && out.shape.back() == ',') out.shape.pop_back();
  } else {
    ADD_FAILURE() << "no shape tuple in " << out.header;
  }

  const size_t data_bytes = b.size() - 10 - hlen;
  EXPECT_EQ(data_bytes % 4, 0u);
  for (size_t off = 10 + hlen; off + 4 <= b.size(); off += 4) {
    const uint32_t bits = uint32_t(b[off]) | (uint32_t(b[off + 1]) << 8) | (uint32_t(b[off + 2]) << 16) |
                          (uint32_t(b[off + 3]) << 24);
    out.values.push_back(std::bit_cast<float>(bits));
  }
  if (fortran) out.values = fortran_to_c(out.values, dims_of(out.shape));
  return out;
}

class NpyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::random_device rd;
    dir_ = fs::temp_directory_path() / fmt::format("k2_unit_npy_{}_{:08x}{:08x}", info->name(), rd(), rd());
    ASSERT_TRUE(fs::create_directories(dir_));
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  fs::path dir_;
};

TEST_F(NpyTest, TwoByThreeFloat32) {
  const std::vector<float> v = {1.5f, -2.0f, 0.25f, 3.0e10f, -0.0f, 7.0f};
  mx::array a(v.data(), mx::Shape{2, 3}, mx::float32);
  const fs::path p = dir_ / "a.npy";
  k2::save_npy_float32(p.string(), a);

  const ParsedNpy n = parse_npy(p);
  EXPECT_EQ(n.shape, "2,3");
  ASSERT_EQ(n.values.size(), 6u);
  for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(std::bit_cast<uint32_t>(n.values[i]), std::bit_cast<uint32_t>(v[i]));
}

TEST_F(NpyTest, OneDimensional) {
  mx::array a(std::vector<float>{0, 1, 2, 3, 4}.data(), mx::Shape{5}, mx::float32);
  const fs::path p = dir_ / "v.npy";
  k2::save_npy_float32(p.string(), a);
  const ParsedNpy n = parse_npy(p);
  EXPECT_EQ(n.shape, "5");
  EXPECT_EQ(n.values, (std::vector<float>{0, 1, 2, 3, 4}));
}

TEST_F(NpyTest, ScalarHasEmptyShape) {
  const fs::path p = dir_ / "s.npy";
  k2::save_npy_float32(p.string(), mx::array(2.5f));
  const ParsedNpy n = parse_npy(p);
  EXPECT_EQ(n.shape, "");
  EXPECT_EQ(n.values, (std::vector<float>{2.5f}));
}

TEST_F(NpyTest, ThreeDimensionalShape) {
  const fs::path p = dir_ / "t.npy";
  k2::save_npy_float32(p.string(), mx::zeros({1, 2, 163840}, mx::float32));
  const ParsedNpy n = parse_npy(p);
  EXPECT_EQ(n.shape, "1,2,163840");
  EXPECT_EQ(n.values.size(), 2u * 163840u);
}

TEST_F(NpyTest, ConvertsOtherDtypesAndWritesCOrder) {
  // int32 input is written as float32.
  const fs::path pi = dir_ / "i.npy";
  k2::save_npy_float32(pi.string(), mx::array(std::vector<int32_t>{-3, 0, 9}.data(), mx::Shape{3}, mx::int32));
  EXPECT_EQ(parse_npy(pi).values, (std::vector<float>{-3, 0, 9}));

  // bfloat16 input (values exact in bf16).
  const fs::path pb = dir_ / "b.npy";
  k2::save_npy_float32(pb.string(), mx::astype(mx::array({1.0f, -0.5f, 256.0f}), mx::bfloat16));
  EXPECT_EQ(parse_npy(pb).values, (std::vector<float>{1.0f, -0.5f, 256.0f}));

  // A transposed view: [[0,1,2],[3,4,5]]^T = [[0,3],[1,4],[2,5]] (MLX writes it in Fortran order).
  const fs::path pt = dir_ / "t.npy";
  mx::array base(std::vector<float>{0, 1, 2, 3, 4, 5}.data(), mx::Shape{2, 3}, mx::float32);
  k2::save_npy_float32(pt.string(), mx::transpose(base));
  const ParsedNpy n = parse_npy(pt);
  EXPECT_EQ(n.shape, "3,2");
  EXPECT_EQ(n.values, (std::vector<float>{0, 3, 1, 4, 2, 5}));
}

TEST_F(NpyTest, WritesExactlyThePathGiven) {
  // mx::save(std::string, …) would write "o.bin.npy"; `k2mlx logits --out o.bin` must write o.bin.
  const fs::path p = dir_ / "o.bin";
  k2::save_npy_float32(p.string(), mx::array(1.0f));
  EXPECT_TRUE(fs::exists(p));
  EXPECT_FALSE(fs::exists(dir_ / "o.bin.npy"));
  EXPECT_EQ(parse_npy(p).values, (std::vector<float>{1.0f}));
}

TEST_F(NpyTest, UnwritablePathThrows) {
  const fs::path p = dir_ / "no-such-folder" / "x.npy";
  EXPECT_THROW(k2::save_npy_float32(p.string(), mx::array(1.0f)), k2::Error);
  EXPECT_FALSE(fs::exists(p));
}

}  // namespace
