import { z } from 'zod';

// Names end up in MQTT topics, file paths and runtime command lines: they are checked strictly
// here, once, so nothing downstream has to escape them.

/** Kubernetes DNS-1123 label: namespaces and model resource names. */
export const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** Kubernetes DNS-1123 subdomain: node names. */
export const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** A model version: starts with a letter or digit, then letters, digits, '.', '_' or '-'. */
export const VERSION_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
/** A model name as served (OIP path segment). */
export const MODEL_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const SHA256_PATTERN = /^[0-9a-fA-F]{64}$/;

export const ResourceName = z
  .string()
  .regex(DNS_LABEL, 'must be a DNS-1123 label (lowercase letters, digits and "-", at most 63)');
export const NodeName = z
  .string()
  .max(253)
  .regex(DNS_SUBDOMAIN, 'must be a DNS-1123 subdomain (lowercase letters, digits, "-" and ".")');
export const Version = z
  .string()
  .regex(VERSION_PATTERN, 'must be 1-63 of letters, digits, ".", "_" or "-", starting with a letter or digit');
export const ModelName = z
  .string()
  .regex(MODEL_NAME_PATTERN, 'must be 1-128 of letters, digits, ".", "_" or "-", starting with a letter or digit');
export const Sha256 = z.string().regex(SHA256_PATTERN, 'must be 64 hexadecimal characters');
