"""The idle alarm's Lambda action: stop the instance the alarm watches (CloudWatch invokes it).

Plain boto3, no imports from this project: the file is the function's inline code as it stands.
"""

import os

import boto3


def handler(event, _context):
    # Alarm actions run on the transition into ALARM; anything else is not a reason to stop.
    if event.get("alarmData", {}).get("state", {}).get("value") != "ALARM":
        return {"stopped": []}
    instance_id = os.environ["INSTANCE_ID"]
    boto3.client("ec2").stop_instances(InstanceIds=[instance_id])
    return {"stopped": [instance_id]}
