/* The public header is plain C99: this file is compiled with -std=c99
 * -pedantic-errors -Werror by the build, and runs a few calls. */
#include <s2ft/s2ft.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  s2ft_tensor t;
  float data[6] = {1, 2, 3, 4, 5, 6};
  if (s2ft_version() != S2FT_VERSION_NUMBER) return 1;
  if (s2ft_tensor_cpu_f32_2d(&t, data, 2, 3) != S2FT_OK) return 2;
  if (s2ft_context_create(NULL, NULL) != S2FT_ERR_INVALID_ARGUMENT) return 3;
  if (strstr(s2ft_last_error(), "out is NULL") == NULL) return 4;
  if (sizeof(s2ft_status) != 4 || sizeof(s2ft_dtype) != 4 || sizeof(s2ft_device) != 8) return 5;
  printf("C99 header ok\n");
  return 0;
}
