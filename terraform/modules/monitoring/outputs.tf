output "namespace" {
  description = "Namespace of the LGTM releases."
  value       = var.namespace
}

output "buckets" {
  description = "Storage bucket per backend."
  value       = { for name, bucket in google_storage_bucket.data : name => bucket.name }
}
