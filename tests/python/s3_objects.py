"""boto3 (AWS's own client, pinned in tests/python/s3-requirements.txt) on the loopback S3 server
of tests/remote.rs: an independent view of what actprm wrote and a way to place objects it did not.
The endpoint and credentials come from the AWS_* environment variables.

usage: s3_objects.py mkbucket BUCKET | put BUCKET KEY FILE | get BUCKET KEY FILE | list BUCKET PREFIX
       (list prints {"key": size, ...} as JSON)
"""

import json
import sys

import boto3

s3 = boto3.client("s3")
command, bucket = sys.argv[1], sys.argv[2]
if command == "mkbucket":
    s3.create_bucket(Bucket=bucket)
elif command == "put":
    s3.upload_file(sys.argv[4], bucket, sys.argv[3])
elif command == "get":
    s3.download_file(bucket, sys.argv[3], sys.argv[4])
elif command == "list":
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=sys.argv[3]):
        for o in page.get("Contents", []):
            found[o["Key"]] = o["Size"]
    print(json.dumps(found))
else:
    sys.exit(f"unknown command {command}")
