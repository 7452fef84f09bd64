/* Reads the clock: imports clock_time_get, which the sandbox does not offer. */
#include <stdio.h>
#include <time.h>
int main(void) { printf("%ld\n", (long)time(NULL)); return 0; }
