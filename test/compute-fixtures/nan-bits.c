/*
 * NaNs of different signs and payloads made by float arithmetic or only moved (a copy, fabs, negation), and
 * the bits of each printed (compute.md §2.4): with NaN canonicalisation every one is the canonical NaN,
 * whatever the hardware does.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static double d (uint64_t bits) { double x; memcpy(&x, &bits, sizeof x); return x; }
static float f (uint32_t bits) { float x; memcpy(&x, &bits, sizeof x); return x; }
static uint64_t bd (double x) { uint64_t b; memcpy(&b, &x, sizeof b); return b; }
static uint32_t bf (float x) { uint32_t b; memcpy(&b, &x, sizeof b); return b; }

int main(void) {
  volatile double zero = 0.0, one = 1.0, minus = -1.0;
  volatile double payload = d(0x7ff8000000000123ull), negsig = d(0xfff4000000000abcull);
  volatile float onef = 1.0f, payloadf = f(0x7fa00001u), negf = f(0xffc00123u);
  volatile double big = 1e300;
  printf("div %016llx\n", (unsigned long long)bd(zero / zero));
  printf("sqrt %016llx\n", (unsigned long long)bd(sqrt(minus)));
  printf("add %016llx\n", (unsigned long long)bd(payload + one));
  printf("mul %016llx\n", (unsigned long long)bd(negsig * one));
  printf("inf %016llx\n", (unsigned long long)bd((big * big) - (big * big)));
  printf("addf %08x\n", bf(payloadf + onef));
  printf("promote %016llx\n", (unsigned long long)bd((double)negf));
  printf("demote %08x\n", bf((float)negsig));
  printf("copy %016llx\n", (unsigned long long)bd(payload));
  printf("neg %016llx\n", (unsigned long long)bd(-payload));
  printf("fabs %016llx\n", (unsigned long long)bd(fabs(negsig)));
  printf("print %f %f\n", zero / zero, one / 3.0);
  return 0;
}
