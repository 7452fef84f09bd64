/*
 * Allocates 1 MiB blocks, touches and keeps them until malloc fails, then aborts (as a C program out of
 * memory does); stops after N MiB if stdin gives a number N.
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
void *volatile kept[4096];
int main(void) {
  int n = 4096;
  if (scanf("%d", &n) != 1 || n > 4096) n = 4096;
  for (int i = 0; i < n; i++) {
    char *p = malloc(1 << 20);
    if (p == NULL) { fprintf(stderr, "out of memory after %d MiB\n", i); abort(); }
    memset(p, 1, 1 << 20);
    kept[i] = p;
  }
  printf("allocated %d MiB\n", n);
  return 0;
}
