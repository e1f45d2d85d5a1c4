"""The `bigquery` source: run the CodeParrot SQL on the public GitHub snapshot, export to GCS.

Steps: a dry run prints the bytes the query would scan and refuses to go on above the budget;
the query writes the destination table (WRITE_TRUNCATE); an extract job writes gzipped
newline-delimited JSON to gs://<bucket>/<prefix>/file-*.json.gz (one file holds at most 1 GB,
hence the wildcard). The `gcs` source then downloads and verifies the shards.

Credentials: application-default credentials (`gcloud auth application-default login` or
GOOGLE_APPLICATION_CREDENTIALS); the billing project is `project` or the credentials' project.
For tests and local development, BIGQUERY_EMULATOR_HOST=http://host:port makes the client talk
anonymously to that emulator (e.g. `local-bigquery`); STORAGE_EMULATOR_HOST does the same for GCS.
"""

import logging
import os

from codeparrot.raw import write_json
from codeparrot.sources.cloud import CloudError, cloud_errors
from codeparrot.sources.gcs import shard_blobs, storage_client

log = logging.getLogger(__name__)

EMULATOR_ENV = "BIGQUERY_EMULATOR_HOST"

# The original dataset's query; extension and size bounds are query parameters.
CODEPARROT_SQL = """\
SELECT f.repo_name, f.path, c.copies, c.size, c.content, l.license
FROM `bigquery-public-data.github_repos.files` AS f
JOIN `bigquery-public-data.github_repos.contents` AS c ON f.id = c.id
JOIN `bigquery-public-data.github_repos.licenses` AS l ON f.repo_name = l.repo_name
WHERE NOT c.binary AND f.path LIKE @path_pattern AND c.size BETWEEN @min_size AND @max_size"""


def bigquery_client(project: str | None = None, location: str | None = None):
    """A BigQuery client from application-default credentials, or anonymous on the emulator."""
    from google.cloud import bigquery

    endpoint = os.environ.get(EMULATOR_ENV)
    if endpoint:
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(
            project=project or "local", location=location, credentials=AnonymousCredentials(),
            client_options={"api_endpoint": endpoint},
        )
    return bigquery.Client(project=project, location=location)


def query_parameters(extension: str, min_size: int, max_size: int) -> list:
    from google.cloud import bigquery

    # LIKE wildcards in the extension itself (`_`, `%`) are escaped to match literally.
    escaped = extension.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return [
        bigquery.ScalarQueryParameter("path_pattern", "STRING", f"%{escaped}"),
        bigquery.ScalarQueryParameter("min_size", "INT64", min_size),
        bigquery.ScalarQueryParameter("max_size", "INT64", max_size),
    ]


def check_scan_budget(bytes_processed: int, maximum_bytes_billed: int) -> None:
    """Refuse a query that would scan more than the configured budget."""
    if bytes_processed > maximum_bytes_billed:
        raise CloudError(
            f"The query would scan {bytes_processed:,} bytes, above source.bigquery.maximum_bytes_billed "
            f"= {maximum_bytes_billed:,}. Raise that key if you accept the cost (the CodeParrot query "
            "scans about 2.6 TB), or narrow the query."
        )


def dry_run(client, sql: str, parameters: list, maximum_bytes_billed: int) -> int:
    """Bytes the query would scan; prints them and refuses above the budget."""
    from google.cloud import bigquery

    config = bigquery.QueryJobConfig(dry_run=True, use_query_cache=False, query_parameters=parameters)
    scanned = client.query(sql, job_config=config).total_bytes_processed or 0
    log.info("dry run: the query would scan %s bytes (%.2f TB); budget %s bytes",
             f"{scanned:,}", scanned / 1e12, f"{maximum_bytes_billed:,}")
    check_scan_budget(scanned, maximum_bytes_billed)
    return scanned


def remove_old_shards(bucket: str, prefix: str, project: str | None) -> int:
    """Delete shards of an earlier export under the prefix, so that the download sees only this one."""
    old = shard_blobs(storage_client(project), bucket, prefix)
    for blob in old:
        blob.delete()
    if old:
        log.info("removed %d shard(s) of an earlier export from gs://%s/%s/", len(old), bucket, prefix.strip("/"))
    return len(old)


def bigquery_export(
    marker_path: str,
    bucket: str,
    prefix: str,
    destination_table: str = "codeparrot.github_python",
    project: str | None = None,
    location: str = "US",
    maximum_bytes_billed: int = 3_000_000_000_000,
    extension: str = ".py",
    min_size: int = 1024,
    max_size: int = 1048575,
) -> dict:
    """Query into `destination_table`, extract it to gs://bucket/prefix/file-*.json.gz; write a marker."""
    if not bucket:
        raise ValueError("source.gcs.bucket is not set: name a bucket you own to receive the export.")
    if destination_table.count(".") != 1:
        raise ValueError(f"source.bigquery.destination_table must be dataset.table, got {destination_table!r}")

    from google.cloud import bigquery

    resource = f"BigQuery project {project or '(of the credentials)'}"
    with cloud_errors(resource, "source.bigquery.project and source.gcs.bucket"):
        client = bigquery_client(project, location)
        table_id = f"{client.project}.{destination_table}"
        parameters = query_parameters(extension, min_size, max_size)
        scanned = dry_run(client, CODEPARROT_SQL, parameters, maximum_bytes_billed)

        dataset = bigquery.Dataset(table_id.rsplit(".", 1)[0])
        dataset.location = location
        client.create_dataset(dataset, exists_ok=True)
        query_job = client.query(CODEPARROT_SQL, job_config=bigquery.QueryJobConfig(
            destination=table_id, write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
            maximum_bytes_billed=maximum_bytes_billed, query_parameters=parameters,
        ))
        log.info("query job %s -> %s", query_job.job_id, table_id)
        query_job.result()
        rows = client.get_table(table_id).num_rows

        remove_old_shards(bucket, prefix, project)
        uri = f"gs://{bucket}/{prefix.strip('/')}/file-*.json.gz"
        extract_job = client.extract_table(table_id, uri, location=location, job_config=bigquery.ExtractJobConfig(
            destination_format=bigquery.DestinationFormat.NEWLINE_DELIMITED_JSON,
            compression=bigquery.Compression.GZIP,
        ))
        log.info("extract job %s -> %s", extract_job.job_id, uri)
        extract_job.result()

        marker = {
            "table": table_id,
            "rows": rows,
            "uri": uri,
            "query_job_id": query_job.job_id,
            "extract_job_id": extract_job.job_id,
            "bytes_scanned_dry_run": scanned,
            "bytes_processed": query_job.total_bytes_processed,
            "bytes_billed": query_job.total_bytes_billed,
            "destination_uri_file_counts": extract_job.destination_uri_file_counts,
        }
        write_json(marker_path, marker)
        log.info("exported %s rows to %s", f"{rows:,}", uri)
        return marker
