/* Writes to stdout without end. */
#include <stdio.h>
int main(void) { for (;;) fputs("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", stdout); }
