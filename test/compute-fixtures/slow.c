/* Spins for N million rounds of a hash (N from stdin, default 50), then prints N and the hash: a task that takes a while. */
#include <stdio.h>
#include <stdint.h>
int main(void) {
  long n = 50;
  if (scanf("%ld", &n) != 1) n = 50;
  uint64_t h = 1469598103934665603ull;
  for (long i = 0; i < n * 1000000L; i++) h = (h ^ (uint64_t)i) * 1099511628211ull;
  printf("%ld %016llx\n", n, (unsigned long long)h);
  return 0;
}
