/* A program using WebAssembly SIMD (built with -msimd128): refused, its float lanes' NaNs are not canonicalised (compute.md §2.4). */
#include <stdio.h>
#include <wasm_simd128.h>
int main(void) {
  float in[8] = {0}, out[4];
  for (int i = 0; i < 8; i++) if (scanf("%f", &in[i]) != 1) in[i] = (float)i;
  v128_t v = wasm_f32x4_mul(wasm_v128_load(in), wasm_v128_load(in + 4));
  v = wasm_f32x4_div(v, wasm_f32x4_sqrt(wasm_v128_load(in + 4)));
  wasm_v128_store(out, v);
  for (int i = 0; i < 4; i++) printf("%f\n", (double)out[i]);
  return 0;
}
