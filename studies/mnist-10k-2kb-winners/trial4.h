/* trial4: a full-int8 network written by nas-mnist export --format c. */
#ifndef TRIAL4_H
#define TRIAL4_H

#include <stdint.h>

#define TRIAL4_INPUT_BYTES 784  /* 28 x 28 x 1, row-major */
#define TRIAL4_CLASSES 10
#define TRIAL4_ARENA_BYTES 1552  /* static, inside trial4.c */

/* input: each pixel (0-255) minus 128; logits: int8, one per class.
   Returns the predicted class (the first of the largest logits). */
int trial4_predict(const int8_t input[TRIAL4_INPUT_BYTES], int8_t logits[TRIAL4_CLASSES]);

#endif
