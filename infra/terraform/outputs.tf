output "bucket" {
  description = "The data and artifacts bucket (gs://...)."
  value       = "gs://${google_storage_bucket.data.name}"
}

output "worker_ip" {
  description = "External IP of the worker VM."
  value       = google_compute_instance.worker.network_interface[0].access_config[0].nat_ip
}

output "worker_service_account" {
  description = "Service account of the worker (read-only on models)."
  value       = google_service_account.worker.email
}

output "pipeline_service_account" {
  description = "Service account for the retraining pipeline (reads data, writes artifacts)."
  value       = google_service_account.pipeline.email
}

output "ssh_command" {
  description = "SSH through IAP."
  value       = "gcloud compute ssh ${google_compute_instance.worker.name} --zone ${var.zone} --tunnel-through-iap"
}

output "fleet_instance_group" {
  description = "The workers' managed instance group (empty without cameras)."
  value       = length(var.cameras) > 0 ? google_compute_region_instance_group_manager.workers[0].instance_group : ""
}
