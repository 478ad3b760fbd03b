#include <cstdio>
int main() { std::puts("k2mlx"); return 0; }
