output "frontend_address" {
  description = "Put this in the Shop's spec.temporal.address."
  value       = "http://${helm_release.this.name}-frontend.${helm_release.this.namespace}.svc:7233"
}

output "temporal_namespace" {
  description = "Put this in the Shop's spec.temporal.namespace (values.yaml creates it)."
  value       = "commerce"
}
