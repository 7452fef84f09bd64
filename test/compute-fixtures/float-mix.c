/* Float arithmetic with no NaN (a Mandelbrot row from "cx cy iterations" on stdin, and a few libm calls): the
 * same bytes whether or not its NaNs are canonicalised (compute.md §2.4). */
#include <math.h>
#include <stdio.h>
int main(void) {
  double cx = 0, cy = 0; int iter = 100;
  if (scanf("%lf %lf %d", &cx, &cy, &iter) != 3) return 2;
  for (int px = 0; px < 64; px++) {
    double x0 = cx + px / 64.0, y0 = cy, x = 0, y = 0; int i = 0;
    while (x * x + y * y <= 4 && i < iter) { double t = x * x - y * y + x0; y = 2 * x * y + y0; x = t; i++; }
    float s = sqrtf((float)i) * 1.5f;
    printf("%d %.6f %.9g\n", i, (double)s, sin(x0) * exp(-y0) + floor(x0 * 10) / 3);
  }
  return 0;
}
