output "namespace" {
  description = "Namespace the release runs in."
  value       = helm_release.this.namespace
}

output "version" {
  description = "Installed chart version."
  value       = helm_release.this.version
}
