/*
 * One tile of a Mandelbrot image, as a p2pos compute task (docs/spec/compute.md): reads
 * "WIDTH HEIGHT X0 Y0 TW TH MAXITER" on stdin — the whole image's size in pixels, the tile's top-left
 * pixel and size, the iteration limit — and writes the tile's TW*TH grey pixels (one byte each, row by row)
 * to stdout. The image spans re [-2.5, 1.0] x im [-1.25, 1.25]. Only IEEE double arithmetic, no NaN:
 * the same bytes on every machine, in WebAssembly or native.
 */
#include <stdio.h>
#include <stdlib.h>

int main(void) {
  long width, height, x0, y0, tw, th, maxiter;
  if (scanf("%ld %ld %ld %ld %ld %ld %ld", &width, &height, &x0, &y0, &tw, &th, &maxiter) != 7 ||
      width <= 0 || height <= 0 || tw <= 0 || th <= 0 || maxiter <= 0 || tw * th > 16 * 1024 * 1024) {
    fprintf(stderr, "usage: echo 'WIDTH HEIGHT X0 Y0 TW TH MAXITER' | mandelbrot\n");
    return 2;
  }
  unsigned char *row = malloc((size_t)tw);
  if (row == NULL) return 3;
  for (long py = y0; py < y0 + th; py++) {
    double ci = 1.25 - 2.5 * (double)py / (double)height;
    for (long px = x0; px < x0 + tw; px++) {
      double cr = -2.5 + 3.5 * (double)px / (double)width;
      double zr = 0.0, zi = 0.0;
      long i = 0;
      while (i < maxiter && zr * zr + zi * zi <= 4.0) {
        double t = zr * zr - zi * zi + cr;
        zi = 2.0 * zr * zi + ci;
        zr = t;
        i++;
      }
      row[px - x0] = i >= maxiter ? 0 : (unsigned char)(255 - (i * 255) / maxiter);
    }
    fwrite(row, 1, (size_t)tw, stdout);
  }
  free(row);
  return 0;
}
