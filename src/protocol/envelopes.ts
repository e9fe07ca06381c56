/**
 * The request and response envelopes shared by every cws protocol. Method-specific params and
 * results are validated separately against each protocol's method table.
 */
import { z } from "zod";
import { ERROR_CODES } from "../errors.ts";

/** A request before its params are checked against the method's own schema. */
export function RequestEnvelopeFor(methods: readonly string[]) {
  return z.object({
    id: z.number().int().nonnegative(),
    method: z.enum(methods as [string, ...string[]]),
    params: z.unknown(),
  });
}

export const WireErrorSchema = z.object({
  code: z.enum(ERROR_CODES),
  message: z.string().max(64 * 1024),
  data: z.record(z.string(), z.unknown()).optional(),
});

export const ResponseEnvelope = z.discriminatedUnion("ok", [
  z.object({ id: z.number().int().nonnegative(), ok: z.literal(true), result: z.unknown() }),
  z.object({ id: z.number().int().nonnegative().nullable(), ok: z.literal(false), error: WireErrorSchema }),
]);
export type ResponseEnvelope = z.infer<typeof ResponseEnvelope>;
