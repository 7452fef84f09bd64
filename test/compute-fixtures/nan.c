/* Prints the sign and bits of the NaN that 0.0/0.0 gives on this machine (compute.md §2.4). */
#include <stdio.h>
#include <string.h>
#include <stdint.h>
int main(void) {
  volatile double z = 0.0;
  double q = z / z;
  uint64_t bits; memcpy(&bits, &q, sizeof bits);
  printf("%f %016llx\n", q, (unsigned long long)bits);
  return 0;
}
