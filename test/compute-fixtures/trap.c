/* Traps (WebAssembly `unreachable`) after writing a little. */
#include <stdio.h>
int main(void) { printf("about to trap\n"); fflush(stdout); __builtin_trap(); }
